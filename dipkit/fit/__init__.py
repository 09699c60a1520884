"""The DIP fit engine: one training loop for every architecture dipkit fits.

What the paper's code does (``FasterDIP-devil-in-upsampling``, ``DIP-Recon/core/fit.py``
and ``denoising.py``), and what :func:`fit` reproduces by default:

* Optimiser: ``torch.optim.Adam(net.parameters(), lr=0.01)``, default betas, no weight
  decay, no learning-rate schedule; 3000 iterations; loss ``MSE(net(z_in), noisy)``.
* Input perturbation: every iteration ``z_in = z + N(0, 1) * reg_noise_std`` with fresh
  noise (1/30 for sigma 25, 1/20 for sigma 50); ``z`` itself never changes.
* Output smoothing: ``out_avg`` starts as the first output, then
  ``out_avg = w * out_avg + (1 - w) * out`` with ``w = exp_weight = 0.99`` (``w = 0``:
  ``out_avg = out``).
* BatchNorm stays in train mode for the whole run, including the final forward pass
  (``net.eval()`` is never called).
* Final output, the one that is scored (Table 2 = last iteration, not the peak):
  ``rec = net(z)`` with the unperturbed code, then ``w * out_avg + (1 - w) * rec``
  (``rec`` alone if ``w = 0``).
* Metrics: PSNR with data range 1 and SSIM (7x7 uniform window, sample covariance,
  channel mean); scikit-image 0.19 inferred a data range of 2 for the paper's SSIM, so
  the result carries SSIM with both 1 and 2.

Differences from the paper's code, all of which leave the arithmetic of the loop alone:
random draws are seeded (input perturbation on the device with its own generator;
:func:`make_input` on the CPU), the metrics are computed on the device and fetched once at
the end instead of calling scikit-image every iteration, and the loss is checked for
NaN/inf (:class:`FitDivergedError`; :mod:`dipkit.fit.divergence`).

Optional, off by default: the original DIP notebook's *backtracking* (on iterations ``i``
with ``i % 100 != 0``, if the PSNR of the output vs the noisy image dropped by more than
5 dB since the last accepted iteration, restore the last snapshot of the parameters --
and here also of the Adam state -- and skip the step; otherwise take a new snapshot).
The snapshot is taken before the step, so it holds the parameters that produced the last
accepted output. Differences from the notebook: the snapshot is a real copy (the
notebook's ``.detach().cpu()`` aliases the live weights on CPU, so there it restores
nothing); the Adam state (moments and step count) is restored too and the rejected
iteration takes no optimiser step (the notebook still steps with the rejected gradient);
a rejected output stays out of the moving average (the notebook adds it), though it is
still recorded in the trajectories; and a NaN output is rejected on every iteration,
including the exempt multiples of 100 (a NaN before the first snapshot raises
:class:`FitDivergedError`). Backtracking costs one host sync per iteration.

Speed (see README, *Fit speed*): no host synchronisation inside the loop, SSIM every
``ssim_every`` iterations on the device, the glibc allocator tuned on first use
(:func:`dipkit.fit.device.tune_host_allocator`), TF32 and ``cudnn.benchmark`` on CUDA, the
training step (:class:`dipkit.fit.step.TrainStep`) captured once into a CUDA graph and replayed
on CUDA (:mod:`dipkit.fit.cuda_graphs`, ``FitSettings.cuda_graphs``), and optional bf16
autocast and ``torch.compile`` (measured, off by default).
:func:`dipkit.fit.batched.fit_batch` runs K fits of one architecture at once (stacked
parameters and ``vmap``), for packing small networks onto a GPU.
:func:`dipkit.fit.reference.reference_fit` is a loop that scores like the paper's code, kept
as the yardstick of ``benchmarks/fit_speed.py`` and of the float64 fidelity test.

Public API: :class:`FitSettings`, :class:`FitResult`, :class:`FitDivergedError`,
:class:`FitOutOfMemoryError`, :func:`fit`, :func:`make_input`, :func:`select_device`,
:func:`describe_device`.
"""

from dipkit.fit.device import describe_device, select_device
from dipkit.fit.engine import fit, make_input
from dipkit.fit.settings import FitDivergedError, FitOutOfMemoryError, FitResult, FitSettings

__all__ = [
    "FitDivergedError",
    "FitOutOfMemoryError",
    "FitResult",
    "FitSettings",
    "describe_device",
    "fit",
    "make_input",
    "select_device",
]
