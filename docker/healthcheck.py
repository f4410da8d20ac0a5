"""The image's HEALTHCHECK: the web role answers /healthz, the llm role /v1/models, a worker reaches
Redis. Exit 0 when healthy, 1 otherwise (one line on stdout, shown by `docker inspect`)."""

import os
import sys
import urllib.request


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=8) as resp:
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")


def main() -> int:
    try:
        with open("/tmp/hercules-role", encoding="utf-8") as fh:
            role = fh.read().strip()
    except OSError:
        role = "web"
    try:
        if role == "llm":
            _get(f"http://127.0.0.1:{os.environ.get('HERCULES_LLM_PORT', '8080')}/v1/models")
        elif role == "worker":
            import redis

            redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5).ping()
        else:
            _get(f"http://127.0.0.1:{os.environ.get('HERCULES_PORT', '8050')}/healthz")
    except Exception as e:  # any failure is "unhealthy"; say which role and why, never a traceback
        print(f"unhealthy ({role}): {type(e).__name__}: {e}"[:300])
        return 1
    print(f"healthy ({role})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
