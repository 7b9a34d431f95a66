"""NCLR: 2D-3D neural calibration (pretext task, network, differentiable PnP, losses, calibrator)."""
