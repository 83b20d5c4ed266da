"""Peer drivers and baselines that bench/ runs beside nopx: stdlib-only shared pieces
(:mod:`fno_configs`, :mod:`timing`, :mod:`venv`), the neuraloperator driver that runs in its
own virtual environment (:mod:`neuralop_train_step`) and the expert datagen pipelines
(:mod:`datagen_baselines`)."""
