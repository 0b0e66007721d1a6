"""Image widths that trigger the faults injected by ``faulty_app`` (kept apart from it: importing
``faulty_app`` patches the inference classes of the importing process)."""

RAISE_IN_DETECTION_WIDTH = 13
RAISE_IN_NETWORK_WIDTH = 14
SLOW_WIDTH = 15
SLOW_SECONDS = 1.5
