// The conformance scenarios against the Python client (suite.ts).
import { conformance } from "./suite.js";

conformance("python");
