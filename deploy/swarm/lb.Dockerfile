# The load balancer of deploy/swarm/stack.yml: nginx from Debian's package, on the same base image as
# the service (built locally when no registry is reachable: scripts/lib/docker-engine.sh).
#
#   docker build -t face-landmarks-lb:latest -f deploy/swarm/lb.Dockerfile deploy/swarm
FROM python:3.11-slim-bookworm

# The version is Debian bookworm's, from the base image's apt sources.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /etc/nginx/conf.d/* \
    && nginx -v

COPY nginx.conf /etc/nginx/nginx.conf
RUN nginx -t -e stderr

# nginx runs unprivileged as www-data (33): it listens on 8080 and writes only to /tmp (a tmpfs in the stack).
USER 33:33
EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/lb/health', timeout=2)"]
CMD ["nginx", "-e", "stderr"]
