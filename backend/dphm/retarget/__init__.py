"""Retargeting tracked performances onto ARKit rigs (docs/arkit.md).

``mapping`` (expression code → 52 ARKit weights, trained on the head model's codebook),
``livelink`` (Live Link Face CSV layout and head yaw/pitch/roll; shared with the Blender add-on),
``curves`` (the ARKit curves of a result folder).
"""
