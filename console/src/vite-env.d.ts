/// <reference types="vite/client" />
interface ImportMetaEnv {
  readonly VITE_LOOM_API?: string;
}
