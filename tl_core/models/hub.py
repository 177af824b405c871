"""timm's hub and its caches: whether the hub can be reached (quickly, never hanging offline),
where a backbone's weights would come from, and loading them through timm.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import timm
import torch
from timm.models import get_pretrained_cfg

from tl_core.common import WeightsError

_logger = logging.getLogger(__name__)

_HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")

HUB_PROBE_TIMEOUT_S = 3.0


def hub_offline_mode() -> bool:
    """Whether the user switched the Hugging Face hub off (``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hf_endpoint() -> str:
    try:
        from huggingface_hub import constants
    except ImportError:
        return "https://huggingface.co"
    return constants.ENDPOINT.rstrip("/")


def can_connect(host: str, port: int, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    Runs in a daemon thread because name resolution ignores socket timeouts and can
    stall far longer on a machine without network.
    """
    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="weights-hub-probe")
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def hub_reachable(url: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether weights could be downloaded now, checked in at most ``timeout`` seconds.

    Without this, the hub client retries with backoff for most of a minute before
    admitting it is offline.

    Args:
        url: The download's address; None means the Hugging Face hub.
        timeout: Seconds to wait for a connection.
    """
    if hub_offline_mode():
        return False
    proxy = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    target = urlsplit(proxy or url or _hf_endpoint())
    if not target.hostname:
        return False
    default_port = 443 if target.scheme == "https" else 80
    return can_connect(target.hostname, target.port or default_port, timeout)


def _pretrained_cfg(name: str) -> dict:
    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _hf_repo(hf_hub_id: str) -> tuple[str, str | None]:
    repo, _, revision = hf_hub_id.partition("@")
    return repo, revision or None


def cached_hub_file(name: str) -> Path | None:
    """A file of the model's timm weights already in a local cache, found without network."""
    cfg = _pretrained_cfg(name)
    if cfg.get("hf_hub_id"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, revision = _hf_repo(cfg["hf_hub_id"])
            filenames = (
                (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_DEFAULT_FILES
            )
            for filename in filenames:
                found = try_to_load_from_cache(repo, filename, revision=revision)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    url = cfg.get("url")
    if isinstance(url, str) and url:
        # Where timm's torch-hub download keeps the file (without creating folders).
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(url).path)
        if candidate.is_file():
            return candidate
    return None


def hub_download_hint(name: str) -> str:
    """Says how to get this model's weights onto a machine that is offline."""
    cfg = _pretrained_cfg(name)
    supply = (
        "Give a weights file instead: --weights FILE on the command line, or the weights upload "
        "on the Model page (.safetensors, .pth, .pt or .bin)."
    )
    if cfg.get("hf_hub_id"):
        repo, revision = _hf_repo(cfg["hf_hub_id"])
        files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_DEFAULT_FILES
        page = f"{_hf_endpoint()}/{repo}" + (f"/tree/{revision}" if revision else "")
        where = f"download {' or '.join(files)} from {page}"
    elif cfg.get("url"):
        where = f"download {cfg['url']}"
    else:
        return f"timm publishes no pretrained weights for {name}. {supply}"
    return f"{supply} On a computer with internet access, {where}."


def hub_source_name(name: str) -> str:
    """The hub repository or URL timm would load this model's weights from."""
    cfg = _pretrained_cfg(name)
    return cfg.get("hf_hub_id") or cfg.get("url") or name


def load_from_timm(name: str) -> tuple[torch.nn.Module, str]:
    cfg = _pretrained_cfg(name)
    if not (cfg.get("hf_hub_id") or cfg.get("url")):
        raise WeightsError(
            f"No pretrained weights are known for the backbone {name}.", hub_download_hint(name)
        )
    source = hub_source_name(name)
    cached = cached_hub_file(name)
    if cached is not None:
        # Point timm at the cached file so it never asks the network whether it is current.
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}
            )
        except Exception as e:  # a damaged cache file: say so instead of a traceback
            raise WeightsError(
                f"The cached pretrained weights for {name} ({cached}) could not be loaded: {e}",
                f"Delete that file and try again. {hub_download_hint(name)}",
            ) from e
        return model, f"timm hub ({source}, cached)"
    if not hub_reachable(cfg.get("url") if not cfg.get("hf_hub_id") else None):
        raise WeightsError(
            f"Pretrained weights for the backbone {name} are not on this computer and the model "
            "hub cannot be reached.",
            hub_download_hint(name),
        )
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as e:  # network or hub errors of many kinds
        raise WeightsError(
            f"Downloading pretrained weights for the backbone {name} from {source} failed: {e}",
            hub_download_hint(name),
        ) from e
    return model, f"timm hub ({source})"
