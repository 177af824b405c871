"""The ``tl-studio`` command line.

Modules (each says what it holds in its own docstring):
    main, options, output, progress
"""
