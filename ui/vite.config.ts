import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a running `kalshi-rl up` (port 8000 by default).
const api = process.env.KALSHI_RL_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  base: "./",
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 1000 },
  server: {
    proxy: {
      "/rl/ws": { target: api.replace(/^http/, "ws"), ws: true },
      "/rl": { target: api },
      "/metrics": { target: api },
    },
  },
});
