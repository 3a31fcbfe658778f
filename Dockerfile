# syntax=docker/dockerfile:1
# Switchboard relay image: Node.js 24 LTS on Debian trixie in every stage. trixie's glibc (2.41) loads
# the native uWebSockets.js v20.57.0 binary (it needs glibc >= 2.38); package.json's "runtime" record
# holds its version, source and sha256. test/deploy/runtime.test.ts fails when this file, that record
# and .ci/run's production runtime (the same Node major and Debian release) drift apart.

# 1. Compile TypeScript to dist/ (tsc; the image runs no TypeScript loader).
FROM node:24-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only. The recorded uWS binary must match its sha256 and load natively on
#    this Node and glibc, or the build stops; the binaries for other platforms and ABIs are removed.
FROM node:24-trixie-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/verify-uws.mjs ./scripts/
# --ignore-scripts: no production dependency needs an install script (the uWS binaries ship prebuilt).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node scripts/verify-uws.mjs --load --prune \
 && npm cache clean --force

# 3. The runtime: compiled JavaScript, production node_modules, package.json ("type": "module").
FROM node:24-trixie-slim AS runtime
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
# Owned by root and read-only for the relay user: the pod also mounts the root filesystem read-only.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin switchboard
USER 10001:10001
EXPOSE 8080
# The relay drains on SIGTERM (readyz 503, live calls run to their end), then exits 0; a second
# SIGTERM or SIGINT closes at once.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (no shell, no npm in between). As PID 1 the
# kernel applies no default action to SIGTERM/SIGINT, so src/main.ts installs handlers for both; the
# relay starts no child processes, so there are no zombies to reap and no init (tini, --init) is needed.
CMD ["node", "dist/src/main.js"]
