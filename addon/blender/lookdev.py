# SPDX-License-Identifier: GPL-3.0-or-later
"""Neutral look-dev for head renders: skin material, three-point light rig, world, AgX view.

Calibrated on the demo head with Cycles (8 samples + denoising) and the AgX view transform: the
head averages ~0.55 in display values (5th–95th percentile 0.3–0.68, nothing clipped), the
backdrop is a dark neutral grey and a faint environment keeps the shadows readable.
"""

from __future__ import annotations

import math

import bpy

MATERIAL_NAME = "DPHM Skin"
WORLD_NAME = "DPHM World"
SKIN_BASE_COLOUR = (0.55, 0.33, 0.24, 1.0)  # linear RGB: light skin (AgX desaturates bright tones)
BACKDROP_COLOUR = (0.018, 0.019, 0.022, 1.0)  # what the camera sees behind the head (linear)
AMBIENT_COLOUR = (0.05, 0.05, 0.055, 1.0)  # soft grey environment lighting (linear)
LIGHT_DISTANCE_M = 1.2
# name: azimuth (degrees from the front, + = the subject's left), elevation (degrees), power (W),
# size (m), colour. Front = the side the sensor sees (world −Y).
LIGHT_RIG = {
    "Key": (-38.0, 28.0, 20.0, 0.7, (1.0, 0.96, 0.91)),
    "Fill": (52.0, 8.0, 4.0, 1.2, (0.92, 0.96, 1.0)),
    "Rim": (165.0, 40.0, 25.0, 0.5, (1.0, 1.0, 1.0)),
}


def _set_input(node: bpy.types.Node, name: str, value) -> None:
    """Set a node input if this Blender has it (Principled BSDF inputs differ across versions)."""
    socket = node.inputs.get(name)
    if socket is not None:
        socket.default_value = value


def _node_tree(datablock) -> bpy.types.NodeTree:
    if datablock.node_tree is None:  # Blender < 5.0 creates materials and worlds without nodes
        datablock.use_nodes = True
    return datablock.node_tree


def head_material() -> bpy.types.Material:
    """A skin-like Principled BSDF with a little subsurface scattering (shared by all heads)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL_NAME)
    mat.diffuse_color = SKIN_BASE_COLOUR  # viewport solid mode
    mat.roughness = 0.5
    bsdf = _node_tree(mat).nodes.get("Principled BSDF")
    if bsdf is not None:
        _set_input(bsdf, "Base Color", SKIN_BASE_COLOUR)
        _set_input(bsdf, "Roughness", 0.48)
        _set_input(bsdf, "Specular IOR Level", 0.35)
        _set_input(bsdf, "Subsurface Weight", 0.15)
        _set_input(bsdf, "Subsurface Radius", (1.0, 0.35, 0.2))
        _set_input(bsdf, "Subsurface Scale", 0.004)  # metres: a few millimetres of light transport
    return mat


def ensure_world(scene: bpy.types.Scene) -> bpy.types.World:
    """A dark neutral backdrop for camera rays and a soft grey environment for lighting."""
    world = bpy.data.worlds.get(WORLD_NAME)
    if world is None:
        world = bpy.data.worlds.new(WORLD_NAME)
        world.color = BACKDROP_COLOUR[:3]
        tree = _node_tree(world)
        nodes, links = tree.nodes, tree.links
        nodes.clear()
        ambient = nodes.new("ShaderNodeBackground")
        ambient.inputs["Color"].default_value = AMBIENT_COLOUR
        backdrop = nodes.new("ShaderNodeBackground")
        backdrop.inputs["Color"].default_value = BACKDROP_COLOUR
        path = nodes.new("ShaderNodeLightPath")
        mix = nodes.new("ShaderNodeMixShader")
        output = nodes.new("ShaderNodeOutputWorld")
        links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        links.new(ambient.outputs["Background"], mix.inputs[1])
        links.new(backdrop.outputs["Background"], mix.inputs[2])
        links.new(mix.outputs["Shader"], output.inputs["Surface"])
    scene.world = world
    return world


def set_view_transform(scene: bpy.types.Scene) -> str:
    """AgX (Blender ≥ 4.0), else Filmic; no look, neutral exposure. Returns the transform used."""
    view = scene.view_settings
    for name in ("AgX", "Filmic"):
        try:
            view.view_transform = name
            break
        except TypeError:
            continue
    view.look = "None"
    view.exposure, view.gamma = 0.0, 1.0
    return view.view_transform


def remove_light_rig(scene: bpy.types.Scene) -> None:
    """Delete the DPHM lights of ``scene`` (other lights are the user's and stay)."""
    for obj in [o for o in scene.objects if o.get("dphm_light")]:
        light = obj.data
        bpy.data.objects.remove(obj)
        if light is not None and light.users == 0:
            bpy.data.lights.remove(light)


def add_light_rig(collection: bpy.types.Collection, target: bpy.types.Object,
                  pivot: bpy.types.Object | None = None) -> list[bpy.types.Object]:
    """Key, fill and rim area lights aimed at ``target``.

    With ``pivot`` the lights are its children, placed around it (they orbit when it turns);
    otherwise they sit around ``target``'s origin in world space.
    """
    centre = (0.0, 0.0, 0.0) if pivot is not None else tuple(target.matrix_world.translation)
    lights = []
    for name, (azimuth, elevation, power, size, colour) in LIGHT_RIG.items():
        light = bpy.data.lights.new(f"DPHM {name}", "AREA")
        light.energy, light.size, light.color = power, size, colour
        obj = bpy.data.objects.new(f"DPHM {name}", light)
        az, el = math.radians(azimuth), math.radians(elevation)
        # The front of the head faces −Y (the sensor looks along +Y).
        obj.location = (centre[0] + LIGHT_DISTANCE_M * math.sin(az) * math.cos(el),
                        centre[1] - LIGHT_DISTANCE_M * math.cos(az) * math.cos(el),
                        centre[2] + LIGHT_DISTANCE_M * math.sin(el))
        if pivot is not None:
            obj.parent = pivot
        constraint = obj.constraints.new("TRACK_TO")
        constraint.target = target if pivot is None else pivot
        obj["dphm_light"] = True
        collection.objects.link(obj)
        lights.append(obj)
    return lights


def ensure_light_rig(collection: bpy.types.Collection, target: bpy.types.Object) -> None:
    """The three-point rig around ``target`` unless ``collection`` already has it (idempotent)."""
    if not any(o.get("dphm_light") for o in collection.objects):
        add_light_rig(collection, target)
