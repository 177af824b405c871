"""The ``tl-studio`` command line.

Modules (each says what it holds in its own docstring):
    main, commands (one module per command), options, output, progress
"""
