import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run build` writes into the Go package that embeds the console (Go's
// embed cannot reach outside its package). `npm run dev` serves the console
// with hot reload and forwards the API's paths to a running Loom (LOOM_API,
// default `loom dev`'s), so the browser sees one origin as in production.
const api = process.env.LOOM_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../server/internal/console/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: {
      // The Origin too: Loom accepts its session cookie only from its own
      // origin, which the browser's page here is, by way of this proxy.
      "^/(loom\\.v1\\.|grpc\\.)": { target: api, changeOrigin: true, secure: false, headers: { origin: new URL(api).origin } },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test/setup.ts"],
  },
});
