"""Which folders of the server's disk the app may read for a user who types a path.

The folder is on the server's disk, not on the computer the browser runs on. Folders inside the
home folder of the user running the server, or inside the workspace, are read; operating-system
folders and the root never are; any other folder is read only while the server answers this
computer alone.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tl_core.common import TLStudioError

# Operating-system folders, never walked for images whatever the server's address.
SYSTEM_FOLDERS = tuple(
    Path("/", name)
    for name in ("bin", "boot", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr", "var")
)


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (paths compared as given)."""
    return path == folder or path.is_relative_to(folder)


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this computer only.

    An empty address means every interface (Streamlit's default), so it is not loopback.
    """
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def readable_folder(text: str, server_address: str | None, workspace_root: Path) -> Path:
    """The folder a user typed, if the server may read it for them (see the module's rule).

    Args:
        text: The path as typed; ``~`` stands for the home folder.
        server_address: The address the server listens on (``server.address``).
        workspace_root: The workspace's folder, read whatever the address.

    Raises:
        TLStudioError: The path is not a folder, or the rule refuses it.
    """
    folder = Path(text.strip()).expanduser()
    if not folder.is_absolute():
        raise TLStudioError(
            f"{text.strip()} is not a full path.",
            "Type the whole path of the folder, starting with / (or ~ for your home).",
        )
    resolved = folder.resolve()  # where links lead, so a link cannot slip past the rule
    if not resolved.is_dir():
        raise TLStudioError(f"{folder} is not a folder.", "Check the path.")
    home = Path.home().resolve()
    hint = f"Put the images in a folder under {home}, or upload them as a .zip."
    # A home or workspace that is the root itself (a service account's) grants nothing.
    own = [root for root in (home, workspace_root.resolve()) if root != Path(root.anchor)]
    if any(is_inside(resolved, root) for root in own):
        return resolved
    if resolved == Path(resolved.anchor) or any(is_inside(resolved, s) for s in SYSTEM_FOLDERS):
        raise TLStudioError(
            f"{folder} is a system folder of the computer running TL Studio: images are "
            "never read from there.",
            hint,
        )
    if not is_loopback(server_address):
        raise TLStudioError(
            f"{folder} is outside your home folder and the workspace. TL Studio answers "
            "other computers too, so it reads folders of its own disk only there.",
            hint,
        )
    return resolved
