# authban: milter sidecar + log correlation + ban engine for sendmail hosts.
#
# Build:  docker build -t authban .
# Run (milter and metrics on the host's loopback, tempfail only, as the unprivileged user):
#   docker run -d --name authban --network host \
#     -v authban-state:/var/lib/authban -v /var/log:/var/log:ro \
#     -v /etc/authban:/etc/authban:ro -e AUTHBAN_CONFIG=/etc/authban/authban.json authban
# With a firewall backend (iptables / ipset / nftables) the container needs the host's network
# namespace and NET_ADMIN, and runs as root:
#   docker run -d --network host --cap-add NET_ADMIN --user root ... authban
# --network host: sendmail reaches the milter on 127.0.0.1:8894 (INPUT_MAIL_FILTER S=inet:8894@127.0.0.1),
# Prometheus scrapes 127.0.0.1:9464, and firewall rules land in the host's tables.
# Volumes: /var/lib/authban (bans and repeat offenders; keep it across upgrades), the host's
# log directory read-only for the log-correlation fallback, /run/authban for the control
# socket if `authban` is used from the host.

FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY test ./test
RUN npm run build

FROM node:20.20.2-bookworm-slim
# The firewall backends run these tools; they stay unused with the default `none` backend.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset nftables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist/src ./dist/src
COPY config ./config
RUN mkdir -p /var/lib/authban /run/authban && chown node:node /var/lib/authban /run/authban
USER node
VOLUME ["/var/lib/authban"]
EXPOSE 8894 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "dist/src/cli.js", "status"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["run"]
