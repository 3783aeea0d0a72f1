# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators (one module per user action)."""
