# SPDX-License-Identifier: GPL-3.0-or-later
"""The client side of the out-of-process dphm backend: find it, start it, talk to it."""
