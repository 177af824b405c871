"""``tl-studio note``: show or set a run's short note (shown in run titles)."""

from __future__ import annotations

import argparse

from tl_core.cli.output import EXIT_OK


def register(subparsers) -> None:
    note = subparsers.add_parser(
        "note", help="show or set a run's short note (shown in run titles)"
    )
    note.add_argument("run", help="run folder")
    note.add_argument("text", nargs="?", help='the note; "" removes it (default: show it)')
    note.set_defaults(func=cmd_note)


def cmd_note(args: argparse.Namespace) -> int:
    from tl_core.runs import read_note, write_note

    if args.text is None:
        print(read_note(args.run) or "(no note)")
        return EXIT_OK
    note = write_note(args.run, args.text)
    print(f"Note saved: {note}" if note else "Note removed.")
    return EXIT_OK
