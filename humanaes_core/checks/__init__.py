"""The checks photographers run first: faces, closed eyes, focus on the eyes, blur, exposure, misfires.

``results`` holds what they find (``Face``, ``PhotoChecks``: plain data the store, the card tables,
culling and the app share); ``detector`` finds faces and their landmarks behind one small interface
(``FaceDetector``; MediaPipe's models on LiteRT); ``eyes``, ``focus`` and ``exposure`` measure; and
``checker`` runs them all on one photo (``check_photo``, ``check_image``). Qt-free and torch-free:
they run on CPU in the scan's worker threads.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used, and only ``check_photo``/``check_image``/``FaceDetector`` load LiteRT.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "BLUR_VERDICTS",
    "CHECKS_VERSION",
    "EXPOSURE_VERDICTS",
    "EYE_STATES",
    "FOCUS_MISSED_BELOW",
    "FOCUS_SHARP_FROM",
    "FOCUS_VERDICTS",
    "GAZE_VERDICTS",
    "MISFIRES",
    "Face",
    "FaceDetector",
    "PhotoChecks",
    "check_image",
    "check_photo",
    "decode_for_checks",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BLUR_VERDICTS": "results",
        "CHECKS_VERSION": "results",
        "EXPOSURE_VERDICTS": "results",
        "EYE_STATES": "results",
        "FOCUS_MISSED_BELOW": "results",
        "FOCUS_SHARP_FROM": "results",
        "FOCUS_VERDICTS": "results",
        "GAZE_VERDICTS": "results",
        "MISFIRES": "results",
        "Face": "results",
        "FaceDetector": "detector",
        "PhotoChecks": "results",
        "check_image": "checker",
        "check_photo": "checker",
        "decode_for_checks": "checker",
    },
)
