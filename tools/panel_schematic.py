#!/usr/bin/env python3
"""A schematic of the DPHM sidebar drawn from the panels' own ``draw()`` code (not a screenshot).

    python tools/panel_schematic.py [--out docs/images/panel_schematic.png]

The ``bpy`` module cannot draw Blender's interface, and no Blender executable with a UI could be
run where the docs were built. This script installs the extension from its zip, sets up the
state an animator has after tracking the demo take (backend checked for real with this
environment's Python, demo result imported, two batch inputs listed), runs ``DPHM_PT_main.draw``,
``DPHM_PT_batch_render.draw`` and ``DPHM_PT_retarget.draw`` against :class:`LayoutRecorder`, and draws what they laid out —
every label, button, field and value comes from the add-on and Blender's RNA, in order; the look
(colours, fonts, widget shapes, no icons) is a plain approximation of Blender's dark theme.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ICON_GLYPHS = {"ADD": "+", "REMOVE": "−", "CANCEL": "×"}


@dataclass
class Item:
    """One recorded layout element: a container (column/row/box/panel) or a widget."""

    kind: str
    text: str = ""
    children: list["Item"] = field(default_factory=list)
    enabled: bool = True
    style: str = ""  # widget flavour: button, field, check, enum, progress, list


class LayoutRecorder:
    """Enough of ``bpy.types.UILayout`` for the DPHM panels: records instead of drawing."""

    def __init__(self, item: Item, context):
        self.item, self.context = item, context

    # -- containers
    def _child(self, kind: str) -> "LayoutRecorder":
        child = Item(kind)
        self.item.children.append(child)
        return LayoutRecorder(child, self.context)

    def column(self, align: bool = False, **_):
        return self._child("column")

    def row(self, align: bool = False, **_):
        return self._child("row")

    def box(self):
        return self._child("box")

    @property
    def enabled(self) -> bool:
        return self.item.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.item.enabled = bool(value)

    # -- widgets
    def _widget(self, text: str, style: str) -> None:
        self.item.children.append(Item("widget", text, style=style))

    def label(self, text: str = "", icon: str = "NONE", **_) -> None:
        self._widget(text, "label")

    def separator(self, **_) -> None:
        self._widget("", "label")

    def operator(self, idname: str, text: str | None = None, icon: str = "NONE", **_):
        import bpy

        if text is None:
            module, name = idname.split(".")
            text = getattr(getattr(bpy.ops, module), name).get_rna_type().name
        self._widget(text or ICON_GLYPHS.get(icon, "•"), "button")
        return type("OperatorProperties", (), {})()

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        self._widget(f"{text} ({factor:.0%})", "progress")

    def prop(self, data, name: str, text: str | None = None, slider: bool = False, **_) -> None:
        rna = data.bl_rna.properties[name]
        label = rna.name if text is None else text
        value = getattr(data, name)
        if rna.type == "BOOLEAN":
            self._widget(("☑ " if value else "☐ ") + label, "check")
        elif rna.type == "ENUM":
            item = rna.enum_items.get(value) if hasattr(rna, "enum_items") else None
            shown = item.name if item is not None else str(value)
            self._widget(f"{label}: {shown} ▾" if label else f"{shown} ▾", "enum")
        elif rna.type in {"INT", "FLOAT"}:
            unit = " %" if getattr(rna, "subtype", "") == "PERCENTAGE" else ""
            self._widget(f"{label}: {value:g}{unit}", "field")
        else:
            self._widget(f"{label}: {value}" if label else str(value), "field")

    def template_list(self, listtype: str, list_id: str, data, propname: str, active_data, active_propname: str,
                      rows: int = 5, **_) -> None:
        import bpy

        ui_list = getattr(bpy.types, listtype)
        box = Item("list")
        for item in getattr(data, propname):
            recorder = LayoutRecorder(Item("row"), self.context)
            ui_list.draw_item(None, self.context, recorder, data, item, "NONE", active_data, active_propname)
            box.children.append(Item("widget", " ".join(w.text for w in recorder.item.children), style="label"))
        while len(box.children) < rows:
            box.children.append(Item("widget", "", style="label"))
        self.item.children.append(box)


def record_panel(panel_cls, context) -> Item:
    """Run ``panel_cls.draw`` with a recording layout (other attributes come from the class)."""
    root = Item("panel", panel_cls.bl_label)

    class Panel:
        layout = LayoutRecorder(root, context)

        def __getattr__(self, name):
            return getattr(panel_cls, name)

    panel_cls.draw(Panel(), context)
    return root


# -- drawing (Pillow, approximating Blender's dark theme)
WIDTH, LINE, PAD = 380, 24, 6
COLOURS = {"background": (48, 48, 48), "header": (61, 61, 61), "box": (40, 40, 40), "button": (84, 84, 84),
           "field": (29, 29, 29), "enum": (84, 84, 84), "check": (48, 48, 48), "progress": (71, 114, 179),
           "text": (230, 230, 230), "disabled": (128, 128, 128), "list": (34, 34, 34)}


def _height(item: Item) -> int:
    if item.kind == "widget":
        return LINE
    heights = [_height(c) for c in item.children]
    if item.kind == "row":
        return max(heights, default=0)
    body = sum(heights) + 2 * max(len(heights) - 1, 0)
    return body + {"box": 2 * PAD, "list": 2 * PAD, "panel": LINE + 2 * PAD}.get(item.kind, 0)


def _narrow(item: Item) -> bool:
    """Icon-only buttons (and columns of them) keep a small fixed width in a row."""
    if item.kind == "widget":
        return len(item.text) <= 1
    return bool(item.children) and item.kind == "column" and all(_narrow(c) for c in item.children)


def _draw(draw, font, item: Item, x: int, y: int, width: int, enabled: bool = True) -> None:
    enabled = enabled and item.enabled
    text_colour = COLOURS["text"] if enabled else COLOURS["disabled"]
    if item.kind == "widget":
        if item.style != "label":
            draw.rounded_rectangle([x, y + 2, x + width - 1, y + LINE - 2], radius=4, fill=COLOURS[item.style])
        centred = item.style in {"button", "progress"}
        text_width = draw.textlength(item.text, font=font)
        tx = x + (width - text_width) / 2 if centred else x + 6
        draw.text((tx, y + 4), item.text, font=font, fill=text_colour)
        return
    if item.kind == "row":
        children = item.children
        narrow = [c for c in children if _narrow(c)]
        slot = 26
        wide_width = (width - slot * len(narrow) - 2 * (len(children) - 1)) / max(len(children) - len(narrow), 1)
        cx = x
        for child in children:
            w = slot if child in narrow else int(wide_width)
            _draw(draw, font, child, int(cx), y, w, enabled)
            cx += w + 2
        return
    if item.kind == "panel":
        draw.rectangle([x, y, x + width - 1, y + LINE], fill=COLOURS["header"])
        draw.text((x + 6, y + 4), "▾ " + item.text, font=font, fill=COLOURS["text"])
        y, x, width = y + LINE + PAD, x + PAD, width - 2 * PAD
    elif item.kind in {"box", "list"}:
        draw.rounded_rectangle([x, y, x + width - 1, y + _height(item) - 1], radius=5, fill=COLOURS[item.kind])
        y, x, width = y + PAD, x + PAD, width - 2 * PAD
    for child in item.children:
        _draw(draw, font, child, x, y, width, enabled)
        y += _height(child) + 2


def render_schematic(panels: list[Item], path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font = ImageFont.truetype(str(font_path), 12) if font_path.is_file() else ImageFont.load_default()
    caption = "Schematic from the panels' draw() code, not a screenshot"
    total = sum(_height(p) + PAD for p in panels) + LINE + PAD
    image = Image.new("RGB", (WIDTH, total), COLOURS["box"])
    draw = ImageDraw.Draw(image)
    y = PAD
    for panel in panels:
        draw.rectangle([0, y, WIDTH - 1, y + _height(panel)], fill=COLOURS["background"])
        _draw(draw, font, panel, 0, y, WIDTH)
        y += _height(panel) + PAD
    draw.text((6, y + 4), caption, font=font, fill=COLOURS["disabled"])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path


def demo_state(out: Path):
    """Backend checked, demo result imported, two batch inputs — what the animator sees."""
    sys.path.insert(0, str(ROOT / "tools"))
    from demo import install_extension

    bpy = install_extension(out)
    prefs = bpy.context.preferences.addons["bl_ext.user_default.dphm"].preferences
    prefs.python_path = sys.executable
    bpy.ops.dphm.check_backend()
    result = ROOT / "out" / "demo" / "result"
    bpy.ops.dphm.import_result(filepath=str(result / "frames.npz"))
    bpy.ops.dphm.batch_add_inputs(directory=str(result))
    blend = ROOT / "out" / "demo" / "demo.blend"
    if blend.is_file():
        bpy.ops.dphm.batch_add_inputs(directory=str(blend.parent), files=[{"name": blend.name}])
    return bpy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "panel_schematic.png")
    args = parser.parse_args()
    bpy = demo_state(ROOT / "out" / "panel-schematic")
    panels = [record_panel(bpy.types.DPHM_PT_main, bpy.context)]
    for sub in (bpy.types.DPHM_PT_batch_render, bpy.types.DPHM_PT_retarget):
        panels[0].children.append(record_panel(sub, bpy.context))
    print(f"panel_schematic: {render_schematic(panels, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
