#!/bin/sh
# Writes the nginx config from the environment, then execs nginx in the foreground (PID 1).
#   API_HOST (default api), API_PORT (default 8000): where / is proxied to.
#   RESOLVER (default 127.0.0.11, Docker's embedded DNS on user-defined networks).
# proxy_pass uses a variable, so nginx resolves API_HOST per request (cached valid=5s) and
# starts even while the api name does not resolve yet (requests then get 502 until it does).
set -eu
API_HOST="${API_HOST:-api}"; API_PORT="${API_PORT:-8000}"; RESOLVER="${RESOLVER:-127.0.0.11}"
for v in "$API_HOST" "$API_PORT" "$RESOLVER"; do
  case "$v" in *[!A-Za-z0-9.:_-]*|'') echo "entrypoint: bad value '$v' in API_HOST/API_PORT/RESOLVER" >&2; exit 64;; esac
done
# shellcheck disable=SC2016  # the single-quoted $vars are nginx variables
printf '%s\n' \
  'worker_processes 1;' \
  'pid /run/nginx.pid;' \
  'error_log stderr notice;' \
  'events { worker_connections 256; }' \
  'http {' \
  '  access_log /dev/stdout;' \
  "  resolver $RESOLVER valid=5s ipv6=off;" \
  '  server {' \
  '    listen 80;' \
  '    location = /nginx-health { default_type text/plain; return 200 "ok\n"; }' \
  '    location / {' \
  "      set \$api http://$API_HOST:$API_PORT;" \
  '      # No URI part after the variable: the request URI is passed on unchanged,' \
  '      # which for "location /" is what "proxy_pass http://api:8000/;" would do.' \
  '      proxy_pass $api;' \
  '      proxy_set_header Host $host;' \
  '      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;' \
  '    }' \
  '  }' \
  '}' > /etc/nginx/nginx.conf
echo "entrypoint: proxying / to http://$API_HOST:$API_PORT (resolver $RESOLVER)"
exec nginx -g 'daemon off;'
