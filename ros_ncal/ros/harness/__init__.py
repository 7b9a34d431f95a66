"""Harnesses that drive a node suite on a live rclpy graph and record what it publishes (``ncal demo``, tests).

Not used by the nodes (test/test_layering.py puts this unit above ``nodes``): ``demo_io`` (frame-by-frame bag
player, the calibrator / collector listener, ``run_graph``), ``perception_io`` (segmenter + detector replay),
``listener`` (the extrinsic publisher's outputs).
"""
