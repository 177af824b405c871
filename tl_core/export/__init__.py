"""Exports of a run: the .zip with its scripts and model card, ONNX, torch.export and TorchScript,
each checked against PyTorch; the one-file web page, checked against the app, and the server
that shares it on the local network.

Modules (each says what it holds in its own docstring):
    formats, model_card, quantized, run_export, share_server, standalone_predict,
    standalone_predict_onnx, web_check, web_export, web_page
"""

from tl_core.common.faces import lazy_face

__getattr__, __dir__ = lazy_face(
    __name__,
    {
        "formats": (
            "ExportedClassifier",
            "MODEL_FORMATS",
            "ModelFormat",
        ),
        "model_card": ("model_card_text",),
        "quantized": (
            "MAX_CHANGED_SHARE",
            "QuantizedAgreement",
        ),
        "run_export": (
            "CHECK_TOLERANCE",
            "ExportCheck",
            "ExportError",
            "WEB_FORMAT",
            "ZIP_FORMAT",
            "export_model",
            "export_torchscript",
            "export_zip",
            "format_for",
            "how_to_load_text",
        ),
        "share_server": (
            "ShareServer",
            "lan_address",
            "qr_svg",
            "who_can_reach",
        ),
        "web_check": ("find_browser",),
        "web_export": (
            "PAGE_TOLERANCE",
            "PageCheck",
            "QUANTIZED_PAGE_TOLERANCE",
            "WebExport",
            "export_web_page",
            "quantized_agreement",
            "web_page_refusal",
        ),
    },
)
