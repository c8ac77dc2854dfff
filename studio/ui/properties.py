"""Observable panel state: a panel's settings live in a small ``PanelModel`` whose
``Property`` attributes announce changes (``changed(name, value)``) and persist themselves
through the typed ``Settings`` wrapper; widgets bind to them two-way (``bind``). So the
state can be read, set and turned into an engine request without any widget (tests do), and
the widgets are views of it.

The pattern is krita-ai-diffusion's ``ai_diffusion/model/properties.py`` (properties with a
change signal each, ``bind``/``bind_combo``/``bind_toggle``), here with one ``changed``
signal per model, because PySide6 signals must exist when the class is made.

    class GenerateModel(PanelModel):
        steps = Property(20, setting="steps")

    m = GenerateModel(settings)
    bind(m, "steps", spin_box)      # spin box shows m.steps, and edits set it
    m.steps = 4                     # the spin box follows; settings.steps == 4
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)

T = TypeVar("T")


class Property(Generic[T]):
    """A model attribute with a default; ``setting``: the ``Settings`` attribute it is
    loaded from and saved to (None: not persisted). ``kind`` converts values set from
    widgets (a QDoubleSpinBox seed arrives as a float)."""

    def __init__(self, default: T, setting: str | None = None, kind: type | None = None) -> None:
        self.default = default
        self.setting = setting
        self.kind = kind or type(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: PanelModel | None, owner: type) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._values.get(self.name, self.default)

    def __set__(self, obj: PanelModel, value: T) -> None:
        if self.kind in (int, float, str, bool) and value is not None:
            value = self.kind(value)  # type: ignore[call-arg]
        if obj._values.get(self.name, self.default) == value and self.name in obj._values:
            return
        obj._values[self.name] = value
        if self.setting and obj.settings is not None and obj.persist:
            setattr(obj.settings, self.setting, value)
        obj.changed.emit(self.name, value)


class PanelModel(QObject):
    """Base of the panels' state models. ``settings``: a ``studio.ui.settings.Settings`` (or
    None: nothing is loaded or saved)."""

    changed = Signal(str, object)  # property name, new value

    def __init__(self, settings: Any = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._values: dict[str, Any] = {}
        self.persist = False  # loading must not write back
        for prop in self.properties():
            if prop.setting and settings is not None:
                setattr(self, prop.name, getattr(settings, prop.setting))
        self.persist = True

    @classmethod
    def properties(cls) -> list[Property]:
        out: dict[str, Property] = {}
        for klass in reversed(cls.__mro__):
            out.update({k: v for k, v in vars(klass).items() if isinstance(v, Property)})
        return list(out.values())

    def values(self) -> dict[str, Any]:
        """Every property's current value (for tests and debugging)."""
        return {p.name: getattr(self, p.name) for p in self.properties()}


def bind(model: PanelModel, name: str, widget: QWidget, data: bool = False) -> None:
    """Two-way binding of ``model.<name>`` and a widget: spin boxes and sliders (value),
    check boxes and buttons (checked), combo boxes (``data=True``: the item data, else the text of an
    editable combo), line and plain-text edits (text). The widget takes the model's value
    at once."""
    to_widget, signal, from_widget = _accessors(widget, data)

    def model_changed(changed: str, value: object) -> None:
        if changed == name and from_widget() != value:
            to_widget(value)

    model.changed.connect(model_changed)
    to_widget(getattr(model, name))
    signal.connect(lambda *_: setattr(model, name, from_widget()))


def _accessors(widget: QWidget, data: bool):
    if isinstance(widget, QAbstractSpinBox | QAbstractSlider):
        return widget.setValue, widget.valueChanged, widget.value
    if isinstance(widget, QAbstractButton):
        return widget.setChecked, widget.toggled, widget.isChecked
    if isinstance(widget, QComboBox) and data:

        def set_data(value: object) -> None:
            i = widget.findData(value)
            widget.setCurrentIndex(max(0, i))

        return set_data, widget.currentIndexChanged, widget.currentData
    if isinstance(widget, QComboBox):
        return widget.setCurrentText, widget.currentTextChanged, widget.currentText
    if isinstance(widget, QLineEdit):
        return widget.setText, widget.textChanged, widget.text
    if isinstance(widget, QPlainTextEdit):
        return widget.setPlainText, widget.textChanged, widget.toPlainText
    raise TypeError(f"cannot bind a {type(widget).__name__}")
