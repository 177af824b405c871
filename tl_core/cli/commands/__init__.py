"""The subcommands: one module per command, or per group of related ones, each with a
``register(subparsers)`` that adds its subcommand(s) and the function that runs it.

Modules (each says what it holds in its own docstring), in the order ``--help`` lists them:
    check, backbones, advise, train, lr_find, transfer_check, evaluate, sweep, auto, note,
    predict (predict and explain), export
"""

from tl_core.cli.commands import (
    advise,
    auto,
    backbones,
    check,
    evaluate,
    export,
    lr_find,
    note,
    predict,
    sweep,
    train,
    transfer_check,
)

COMMANDS = (
    check,
    backbones,
    advise,
    train,
    lr_find,
    transfer_check,
    evaluate,
    sweep,
    auto,
    note,
    predict,
    export,
)
