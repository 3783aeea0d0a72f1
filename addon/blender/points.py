# SPDX-License-Identifier: GPL-3.0-or-later
"""Show a vertex-only mesh as renderable points (Geometry Nodes: Mesh to Points)."""

from __future__ import annotations

import bpy

GROUP_NAME = "DPHM Points"


def points_node_group(radius: float) -> bpy.types.NodeTree:
    """A node group turning mesh vertices into point-cloud points of ``radius`` metres."""
    group = bpy.data.node_groups.new(GROUP_NAME, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    node_in = nodes.new("NodeGroupInput")
    node_out = nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.inputs["Radius"].default_value = radius
    links.new(node_in.outputs[0], to_points.inputs["Mesh"])
    links.new(to_points.outputs["Points"], node_out.inputs[0])
    return group


def display_as_points(obj: bpy.types.Object, radius: float = 0.0012) -> None:
    """Add a Geometry Nodes modifier that renders ``obj``'s vertices as small spheres."""
    modifier = obj.modifiers.new("DPHM points", "NODES")
    modifier.node_group = points_node_group(radius)
