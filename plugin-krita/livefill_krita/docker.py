"""The livefill docker: prompt and knobs, the action buttons, progress and status.

Why this module exists: it is the artist's side of the plugin and nothing more. Every button calls
the shared ``Controller`` (the same code the tests drive), and the docker only mirrors the
controller's signals (connection state, progress, messages) into widgets.
"""

from typing import Optional

from krita import DockWidget
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import krita_document as kd
from . import logic
from .connection import CONNECTED

try:
    from . import livefill_plugin_core as core
except ImportError:  # development checkout
    import livefill_plugin_core as core  # type: ignore[no-redef]
from .controller import get_controller

DOCKER_ID = "livefill_docker"
DOCKER_TITLE = "livefill"


def _setting_float(key: str, default: float) -> float:
    try:
        return float(kd.read_setting(key, str(default)))
    except ValueError:
        return default


def _setting_int(key: str, default: int) -> int:
    try:
        return int(float(kd.read_setting(key, str(default))))
    except ValueError:
        return default


class LivefillDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(DOCKER_TITLE)
        #: The live warning shown above the message line while Live is on, and that line.
        self._live_warning: Optional[str] = None
        self._last_message = ""
        self.controller = get_controller()
        root = QWidget(self)
        layout = QVBoxLayout(root)
        layout.setContentsMargins(4, 4, 4, 4)

        self.prompt = QPlainTextEdit(root)
        self.prompt.setPlaceholderText("Prompt: what to paint")
        self.prompt.setFixedHeight(56)
        self.negative = QLineEdit(root)
        self.negative.setPlaceholderText("Negative prompt")
        layout.addWidget(self.prompt)
        layout.addWidget(self.negative)

        form = QFormLayout()
        # The model by its name in the daemon's list; "" = Automatic (the daemon's choice per
        # action). Filled from ListModels after each connection (``_fill_models``); long labels
        # are cut rather than widening the docker (the whole text is the tooltip).
        self.model_picker = QComboBox(root)
        self.model_picker.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_picker.setMinimumContentsLength(14)
        self._model_choice = ""
        self.preset = QComboBox(root)
        for preset in core.PRESETS:
            self.preset.addItem(preset.name, preset.name)
            self.preset.setItemData(self.preset.count() - 1, preset.hint, Qt.ToolTipRole)
        self.preset.setToolTip("Sampler for the model: choosing one sets steps and guidance")
        # The sampler and spacing the chosen preset stands for (kept when steps change).
        self._sampler = ""
        self._spacing = ""
        self.strength = QDoubleSpinBox(root)
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.steps = QSpinBox(root)
        self.steps.setRange(1, 50)
        self.guidance = QDoubleSpinBox(root)
        self.guidance.setRange(0.0, 20.0)
        self.guidance.setSingleStep(0.5)
        self.eta = QDoubleSpinBox(root)
        self.eta.setRange(-0.05, 1.0)
        self.eta.setSingleStep(0.05)
        self.eta.setSpecialValueText("default")  # the minimum: the sampler's own (0 / 0.3)
        self.eta.setToolTip("DDIM's eta / TCD's gamma (randomness per step); other samplers ignore it")
        seed_row = QHBoxLayout()
        self.random_seed = QCheckBox("Random", root)
        self.seed = QSpinBox(root)
        self.seed.setRange(0, core.MAX_SEED)
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.seed, 1)
        self.source = QComboBox(root)
        self.source.addItem("Current layer", core.SOURCE_LAYER)
        self.source.addItem("Visible image", core.SOURCE_IMAGE)
        form.addRow("Model", self.model_picker)
        form.addRow("Sampler", self.preset)
        form.addRow("Strength", self.strength)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Eta", self.eta)
        form.addRow("Seed", seed_row)
        form.addRow("Read from", self.source)
        layout.addLayout(form)

        buttons = QGridLayout()
        self.fill_button = QPushButton("Fill", root)
        self.fill_button.setToolTip("Inpaint the selection (the whole layer without one) into a new layer")
        self.generate_button = QPushButton("Generate", root)
        self.generate_button.setToolTip("Text to image into a new layer over the selection or canvas")
        self.expand_button = QPushButton("Expand", root)
        self.expand_button.setToolTip("Grow the canvas on the chosen sides and outpaint the new border")
        self.live_button = QPushButton("Live", root)
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Preview img2img of the current layer while you paint")
        self.apply_button = QPushButton("Apply", root)
        self.apply_button.setToolTip("Keep the live preview as a normal layer")
        self.cancel_button = QPushButton("Cancel", root)
        buttons.addWidget(self.fill_button, 0, 0)
        buttons.addWidget(self.generate_button, 0, 1)
        buttons.addWidget(self.expand_button, 0, 2)
        buttons.addWidget(self.live_button, 1, 0)
        buttons.addWidget(self.apply_button, 1, 1)
        buttons.addWidget(self.cancel_button, 1, 2)
        layout.addLayout(buttons)

        expand_row = QHBoxLayout()
        self.expand_amount = QSpinBox(root)
        self.expand_amount.setRange(8, 2048)
        self.expand_amount.setSingleStep(8)
        self.expand_amount.setSuffix(" px")
        expand_row.addWidget(self.expand_amount)
        self.side_boxes = {}
        for side, label in (("left", "L"), ("top", "T"), ("right", "R"), ("bottom", "B")):
            box = QCheckBox(label, root)
            box.setToolTip("Expand the %s side" % side)
            self.side_boxes[side] = box
            expand_row.addWidget(box)
        layout.addLayout(expand_row)

        self.progress = QProgressBar(root)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        layout.addWidget(self.progress)
        self.message = QLabel("", root)
        self.message.setWordWrap(True)
        self.status = QLabel("", root)
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(mid);")
        layout.addWidget(self.message)
        layout.addWidget(self.status)

        self.daemon_toggle = QToolButton(root)
        self.daemon_toggle.setText("Daemon settings")
        self.daemon_toggle.setCheckable(True)
        self.daemon_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.daemon_toggle.setArrowType(Qt.RightArrow)
        self.daemon_toggle.setAutoRaise(True)
        self.daemon_box = QWidget(root)
        daemon_form = QFormLayout(self.daemon_box)
        daemon_form.setContentsMargins(0, 0, 0, 0)
        self.exe_path = QLineEdit(self.daemon_box)
        self.exe_path.setPlaceholderText("livefill (from PATH)")
        self.model_dir = QLineEdit(self.daemon_box)
        self.model_dir.setPlaceholderText("model folder (daemon default)")
        self.connect_button = QPushButton("Connect / start daemon", self.daemon_box)
        daemon_form.addRow("livefill", self.exe_path)
        daemon_form.addRow("Model", self.model_dir)
        daemon_form.addRow(self.connect_button)
        self.daemon_box.setVisible(False)
        self.daemon_toggle.toggled.connect(self._show_daemon_settings)
        layout.addWidget(self.daemon_toggle)
        layout.addWidget(self.daemon_box)
        layout.addStretch(1)
        self.setWidget(root)

        self._load_settings()
        self._wire()
        self._push_settings()
        link = self.controller.link
        self._on_connection(link.state, link.last_error or "Not connected yet.")
        self.controller.refresh_status()

    # ---- wiring ----------------------------------------------------------------------------

    def _wire(self) -> None:
        c = self.controller
        self.fill_button.clicked.connect(lambda: (self._push_settings(), c.fill()))
        self.generate_button.clicked.connect(lambda: (self._push_settings(), c.generate()))
        self.expand_button.clicked.connect(lambda: (self._push_settings(), c.expand()))
        self.live_button.toggled.connect(self._toggle_live)
        self.apply_button.clicked.connect(c.apply_preview)
        self.cancel_button.clicked.connect(c.cancel)
        self.connect_button.clicked.connect(lambda: (self._push_settings(), c.link.connect_daemon(start=True)))
        c.connection_changed.connect(self._on_connection)
        c.link.connected.connect(self._on_hello)
        c.progress.connect(self._on_progress)
        c.message.connect(self._show_message)
        c.live_changed.connect(self._on_live_changed)
        c.models_changed.connect(self._fill_models)
        c.model_fallback.connect(lambda _text: self._set_model_choice(core.AUTOMATIC))
        self.model_picker.activated.connect(
            lambda index: self._set_model_choice(self.model_picker.itemData(index) or core.AUTOMATIC))
        c.preview_changed.connect(self.apply_button.setEnabled)
        for widget in (self.strength, self.guidance, self.eta):
            widget.valueChanged.connect(self._push_settings)
        for widget in (self.steps, self.seed, self.expand_amount):
            widget.valueChanged.connect(self._push_settings)
        self.prompt.textChanged.connect(self._push_settings)
        self.negative.textChanged.connect(self._push_settings)
        self.random_seed.toggled.connect(self._push_settings)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.source.currentIndexChanged.connect(self._push_settings)
        self.preset.activated.connect(self._choose_preset)
        for box in self.side_boxes.values():
            box.toggled.connect(self._push_settings)
        self.exe_path.editingFinished.connect(self._push_settings)
        self.model_dir.editingFinished.connect(self._push_settings)
        self.apply_button.setEnabled(False)

    def _show_daemon_settings(self, on: bool) -> None:
        self.daemon_box.setVisible(on)
        self.daemon_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)

    def _load_settings(self) -> None:
        self.prompt.setPlainText(kd.read_setting("prompt", ""))
        self.negative.setText(kd.read_setting("negative_prompt", ""))
        self.strength.setValue(_setting_float("strength", core.DEFAULT_STRENGTH))
        self.steps.setValue(_setting_int("steps", core.DEFAULT_STEPS))
        self.guidance.setValue(_setting_float("guidance", core.DEFAULT_GUIDANCE))
        self.eta.setValue(_setting_float("eta", self.eta.minimum()))
        self._sampler = kd.read_setting("sampler", "")
        self._spacing = kd.read_setting("spacing", "")
        self._show_preset()
        self._model_choice = kd.read_setting("model_choice", core.AUTOMATIC)
        self.random_seed.setChecked(kd.read_setting("random_seed", "true") == "true")
        self.seed.setValue(_setting_int("seed", 42))
        self.seed.setEnabled(not self.random_seed.isChecked())
        index = self.source.findData(kd.read_setting("source", core.SOURCE_LAYER))
        self.source.setCurrentIndex(max(0, index))
        self.expand_amount.setValue(_setting_int("expand_amount", core.DEFAULT_EXTEND_BORDER))
        sides = kd.read_setting("expand_sides", "right")
        for side, box in self.side_boxes.items():
            box.setChecked(side in sides.split(","))
        self.exe_path.setText(kd.read_setting("livefill_exe", ""))
        self.model_dir.setText(kd.read_setting("model_dir", ""))
        self._fill_models(self.controller.models)  # last: a fallback writes every setting

    def _push_settings(self, *_args) -> None:
        """Copies the widgets into the controller and remembers them in kritarc."""
        s = core.Settings(
            prompt=self.prompt.toPlainText(),
            negative_prompt=self.negative.text(),
            strength=self.strength.value(),
            steps=self.steps.value(),
            guidance=self.guidance.value(),
            seed=None if self.random_seed.isChecked() else self.seed.value(),
            source=self.source.currentData() or core.SOURCE_LAYER,
            sampler=self._sampler,
            spacing=self._spacing,
            eta=None if self.eta.value() <= self.eta.minimum() else self.eta.value(),
            model=self._model_choice,
        )
        sides = logic.Sides(self.expand_amount.value(), **{k: b.isChecked() for k, b in self.side_boxes.items()})
        c = self.controller
        c.settings = s
        c.sides = sides
        c.live_touched()  # a live preview follows the new settings
        self._update_live_warning()
        c.configure(self.exe_path.text().strip(), self.model_dir.text().strip(), c.link.socket_path)
        for key, value in (
            ("prompt", s.prompt), ("negative_prompt", s.negative_prompt), ("strength", s.strength),
            ("steps", s.steps), ("guidance", s.guidance), ("random_seed", "true" if s.seed is None else "false"),
            ("seed", self.seed.value()), ("source", s.source), ("expand_amount", sides.amount),
            ("expand_sides", ",".join(k for k, b in self.side_boxes.items() if b.isChecked())),
            ("livefill_exe", self.exe_path.text().strip()), ("model_dir", self.model_dir.text().strip()),
            ("sampler", s.sampler), ("spacing", s.spacing), ("eta", self.eta.value()),
            ("model_choice", s.model),
        ):
            kd.write_setting(key, str(value))

    # ---- controller -> widgets -------------------------------------------------------------

    def _fill_models(self, models) -> None:
        """The picker from the daemon's models (None: not known yet, the remembered choice is
        shown as is); a remembered model the daemon no longer offers falls back to Automatic."""
        choice, note = self._model_choice, None
        if models is not None:
            choice, note = core.check_choice(choice, models)
        picker = self.model_picker
        picker.blockSignals(True)
        picker.clear()
        for entry in core.model_entries(models, choice, logic.KRITA):
            picker.addItem(entry.label, entry.name)
            picker.setItemData(picker.count() - 1, entry.tooltip, Qt.ToolTipRole)
            if entry.broken:
                picker.setItemData(picker.count() - 1, QColor("#c33"), Qt.ForegroundRole)
        picker.setCurrentIndex(max(0, picker.findData(choice)))
        picker.blockSignals(False)
        self._show_model_tooltip()
        if choice != self._model_choice:
            self._set_model_choice(choice)
        if note:
            self._show_message(note)
        self._update_live_warning()  # Live's model may be known only now

    def _set_model_choice(self, name: str) -> None:
        """The artist's (or a fallback's) model choice: sent with every request, kept in kritarc."""
        self._model_choice = name
        index = self.model_picker.findData(name)
        if index >= 0 and index != self.model_picker.currentIndex():
            self.model_picker.blockSignals(True)
            self.model_picker.setCurrentIndex(index)
            self.model_picker.blockSignals(False)
        self._show_model_tooltip()
        self._push_settings()

    def _show_model_tooltip(self) -> None:
        index = self.model_picker.currentIndex()
        text = self.model_picker.itemData(index, Qt.ToolTipRole) if index >= 0 else ""
        self.model_picker.setToolTip("%s\n%s" % (self.model_picker.currentText(), text or ""))

    def _choose_preset(self, index: int) -> None:
        """A preset sets the sampler, steps and guidance (which stay editable)."""
        name = self.preset.itemData(index)
        if not name:
            return
        s = core.apply_preset(core.Settings(steps=self.steps.value(), guidance=self.guidance.value()), name)
        self._sampler, self._spacing = s.sampler, s.spacing
        for widget, value in ((self.steps, s.steps), (self.guidance, s.guidance)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self._push_settings()

    def _on_hello(self, hello) -> None:
        """With "Model default", steps and guidance follow the model the daemon loaded."""
        if self._sampler or hello is None:
            return
        caps = hello.capabilities
        for widget, value in ((self.steps, caps.default_steps), (self.guidance, caps.default_guidance)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self._push_settings()

    def _show_preset(self) -> None:
        index = self.preset.findData(core.preset_of(core.Settings(sampler=self._sampler, spacing=self._spacing)))
        self.preset.setCurrentIndex(max(0, index))

    def _toggle_live(self, on: bool) -> None:
        self._push_settings()
        self.controller.set_live(on)  # its live_changed updates the warning

    def _update_live_warning(self) -> None:
        """While Live is on: the warning for the model and sampler Live runs now (another model
        or preset picked meanwhile counts), kept above each live status line until Live stops or
        the settings are real time again."""
        hello = self.controller.link.hello
        warning = None
        if self.live_button.isChecked():
            warning = core.live_warning(hello.capabilities if hello is not None else None,
                                        self.controller.settings, self.controller.models,
                                        hello.model if hello is not None else "")
        if warning != self._live_warning:
            self._live_warning = warning
            self._show_message(self._last_message)

    def _show_message(self, text: str) -> None:
        self._last_message = text
        shown = [t for t in (self._live_warning, text) if t]
        self.message.setText("\n".join(shown))

    def _on_live_changed(self, on: bool) -> None:
        if self.live_button.isChecked() != on:
            self.live_button.blockSignals(True)
            self.live_button.setChecked(on)
            self.live_button.blockSignals(False)
        self._update_live_warning()

    def _on_connection(self, state: str, text: str) -> None:
        self.status.setText(text)
        color = {CONNECTED: "#3a3"}.get(state, "#c83")
        self.status.setStyleSheet("color: %s;" % color)

    def _on_progress(self, step: int, total: int) -> None:
        if total <= 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        else:
            self.progress.setRange(0, total)
            self.progress.setValue(step)

    def canvasChanged(self, canvas) -> None:  # required by DockWidget
        pass
