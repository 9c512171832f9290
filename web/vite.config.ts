// Builds the app into dist/; the edge serves it (hashed files under assets/).
// `npm run dev` proxies nothing: point it at a running edge with CORS
// (BOXOFFICE_EDGE_CORS_ORIGINS includes http://localhost:5173 by default)
// and VITE_API_URL=http://127.0.0.1:8080.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    target: "es2022",
    assetsDir: "assets",
    sourcemap: false,
  },
});
