# SPDX-License-Identifier: GPL-3.0-or-later
"""Format logic with no bpy: result folders written by the dphm backend."""
