"""Mesh extraction from signed distance functions (sparse hierarchical marching cubes)."""

from .marching import DEFAULT_BOX, Mesh, MeshingConfig, MeshingStats, dense_sdf_grid, extract_mesh, sparse_sdf_grid

__all__ = ["DEFAULT_BOX", "Mesh", "MeshingConfig", "MeshingStats", "dense_sdf_grid", "extract_mesh", "sparse_sdf_grid"]
