"""Servers, clients and data generators used by the tests, benchmarks and scripts (not the product).

``openai_stub_server`` (an OpenAI-compatible stub endpoint), ``browser_support`` (the app in a
subprocess, headless Chromium, data files), ``dash_http`` (a Dash callback client over HTTP),
``procs`` (web, worker and Redis processes). The product never imports this package, and it is not
copied into the Docker image.
"""
