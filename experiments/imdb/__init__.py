"""The IMDB RNN study in the Flax-examples shape: ``config``, ``input_pipeline``, ``train``.

``experiments/imdb_rnn.py`` is its thin main (command line -> :class:`config.Config` ->
:func:`train.train_and_evaluate`).
"""
