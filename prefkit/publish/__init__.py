"""Dataset card, local dataset folder and Hub publishing: the last stage of a build.

- ``card``: ``CardContext`` -> ``render_card`` (YAML metadata + prose from ``cards/dataset_card.md.j2``).
- ``layout``: ``write_dataset_dir`` lays out ``README.md``, ``prefkit.json``, ``data/<config>/<split>-*.parquet``
  and ``plots/`` exactly as they go to the Hub; ``datasets.load_dataset(DIR, CONFIG)`` loads it.
- ``hub``: ``publish_dataset`` uploads that folder in one commit, merging the remote card and refusing to
  overwrite a different dataset unless forced.

Modules are imported on use (``from prefkit.publish.hub import publish_dataset``): huggingface_hub and jinja2
load only when needed.
"""
