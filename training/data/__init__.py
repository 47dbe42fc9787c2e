"""The images a student learns from and is judged on, and what is cached about them.

``sets`` (file lists of the pool, LFW and the extra sets) and ``sources`` (the extra sources and their extraction),
``landmarks`` (the service's detector on every image), ``curate`` (the curated pool's rules), ``labels`` and
``holdout`` (the identities never trained on), ``views`` and ``feature_cache`` (teacher views and their cached
outputs), ``calibration_sets`` (the CelebA test split and LFW for operating points). Nothing here trains.
"""
