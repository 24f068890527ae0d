"""Pictures: heatmaps of attention weights, per-pixel attention maps, image grids."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
