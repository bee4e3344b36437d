# walcast daemon image. Build: docker build -t walcast .
# Run:   docker run --rm -e DATABASE_URL=postgres://... walcast migrate
#        docker run --rm -p 4000:4000 -e DATABASE_URL=postgres://... -e WALCAST_JWT_SECRET=... walcast serve --host 0.0.0.0
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies (embedded Postgres binaries for `walcast dev`) are not needed in the image.
RUN npm ci --omit=optional --no-audit --no-fund
# The published build: src/ only (tsconfig.build.json), no tests or benchmarks.
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build:publish && npm prune --omit=dev --omit=optional

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY sql ./sql
COPY models ./models
USER node
EXPOSE 4000
ENTRYPOINT ["node", "/app/bin/walcast.js"]
CMD ["--help"]
