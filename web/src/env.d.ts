// Types for Vite's additions to modules (import.meta.env, CSS imports).
/// <reference types="vite/client" />
