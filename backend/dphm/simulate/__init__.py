"""Simulated Azure-Kinect-like depth recordings of ICT-FaceKit heads with exact ground truth.

Entry points: :class:`dphm.simulate.simulator.Simulator` (plan + render frames),
:func:`dphm.simulate.output.simulate_recording` (write folder/MKV + ``gt.npz``),
:func:`dphm.simulate.ground_truth.load_ground_truth`. See docs/simulator.md.
"""
