"""The run browser: every run in a store, reviewed in a web browser, served by Kaizen.

`pages.py` has the routes (HTML rendered on the server with Jinja2, under ``/ui``),
`views.py` what each page shows, worked out from the store (`kaizen.store.browse`);
``templates/`` and ``static/`` (one CSS and one JavaScript file) ship in the wheel, so the pages
need no network and no build step. `kaizen serve` mounts the browser at ``/ui`` beside its API
(`kaizen.serve.app.create_app`); `kaizen ui` serves it over a store alone (`app.py`:
`create_browser_app`): read-only, or with ``--allow-actions`` the cancel of served runs. Actions
that run a workflow (start, answer, resume, replay) need the workflow: `kaizen ui --target
module:attr` serves it as `kaizen serve` does.
"""
