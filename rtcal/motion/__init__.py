"""Motion correction: rigid (default) or piecewise-rigid registration to a running template.

Entry point: :class:`rtcal.motion.corrector.MotionCorrector` (alias
``RigidMotionCorrector``) with :class:`rtcal.motion.config.MotionConfig`.
Kernels, one concept per file: ``frame_check`` (screen and centre a frame),
``bandpass`` (edge-free band-passed spectra), ``upsampled_dft`` (sub-pixel
correlation peak), ``rigid`` (shift estimate and bilinear shift), ``patches``,
``piecewise`` (per-patch shifts), ``remap`` (shift field and resampling),
``fourier`` (exact Fourier shift).
"""
