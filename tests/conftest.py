"""Tests run torch single-threaded: their tensors are small, and on a shared 2-core machine a multi-threaded torch
that competes with another process for the cores runs the flows' many small operations about 20 times slower."""

import torch

torch.set_num_threads(1)
