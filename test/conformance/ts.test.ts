// The conformance scenarios against the TypeScript client (suite.ts).
import { conformance } from "./suite.js";

conformance("ts");
