// The chaos soak alone (npm run chaos); the test command's vitest config leaves it out.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/chaos/soak.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    testTimeout: 4 * 3600_000,
  },
});
