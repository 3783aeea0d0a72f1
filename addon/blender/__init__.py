# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything that creates or edits Blender data."""
