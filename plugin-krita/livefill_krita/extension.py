"""Menu actions (Tools > Scripts > livefill ...), so every docker button can get a shortcut.

Why this module exists: Krita binds shortcuts to actions, not to docker buttons; these actions
call the same ``Controller`` methods as the buttons.
"""

from krita import Extension

from .controller import get_controller

ACTIONS = (
    ("livefill_fill", "livefill: Fill selection", "fill"),
    ("livefill_generate", "livefill: Generate", "generate"),
    ("livefill_expand", "livefill: Expand canvas", "expand"),
    ("livefill_apply", "livefill: Apply live preview", "apply_preview"),
    ("livefill_cancel", "livefill: Cancel", "cancel"),
)


class LivefillExtension(Extension):
    def __init__(self, parent) -> None:
        super().__init__(parent)

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        for action_id, text, method in ACTIONS:
            action = window.createAction(action_id, text, "tools/scripts")
            action.triggered.connect(lambda _checked=False, m=method: getattr(get_controller(), m)())
        live = window.createAction("livefill_live", "livefill: Toggle live preview", "tools/scripts")
        live.triggered.connect(lambda _checked=False: get_controller().set_live(not get_controller().live))
