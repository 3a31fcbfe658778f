# syntax=docker/dockerfile:1
# Switchboard relay image. Both stages are node:20-bookworm-slim: the native uWebSockets.js addon is
# built for Node 20 and bookworm's glibc, and the relay refuses to start if it does not load.
# No build step: tsx (a production dependency) runs the TypeScript sources directly.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script (the uWS binaries ship prebuilt).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
# Owned by root and read-only for the relay user: the pod also mounts the root filesystem read-only.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src ./src
COPY loadtest/lib ./loadtest/lib
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin switchboard
USER 10001:10001
EXPOSE 8080
# The relay drains on SIGTERM (readyz 503, live calls run to their end), then exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (no shell, no npm in between).
CMD ["node", "--import", "tsx", "src/main.ts"]
