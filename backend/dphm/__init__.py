"""dphm: track human heads in depth recordings with a neural parametric head model.

Data flow (one sub-package per stage):
``recording`` (readers) → ``preprocess`` (frames → canonical head points) → ``model``
(identity SDF, backward deformation, diffusion priors) → ``fit`` (tracking phases) →
``meshing`` (marching cubes, topology-consistent frames) → ``result`` (output folder) →
``server`` (protocol spoken with the Blender add-on).
"""

__version__ = "0.1.0"
