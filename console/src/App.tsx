import { lazy } from "react";
import { Route, Routes } from "react-router";
import { Layout } from "./components/Layout";
import { Home } from "./pages/Home";
import { NotFound } from "./components/Common";
import { Title } from "./title";

// Pages load on first visit: the fleet page does not wait for the diff and
// Markdown renderers of the others.
const MigrationPage = lazy(() => import("./pages/MigrationPage").then((m) => ({ default: m.MigrationPage })));
const CandidatePage = lazy(() => import("./pages/CandidatePage").then((m) => ({ default: m.CandidatePage })));
const RolloutPage = lazy(() => import("./pages/RolloutPage").then((m) => ({ default: m.RolloutPage })));
const HistoryPage = lazy(() => import("./pages/HistoryPage").then((m) => ({ default: m.HistoryPage })));
const FleetMetricsPage = lazy(() => import("./pages/FleetMetricsPage").then((m) => ({ default: m.FleetMetricsPage })));

export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Home />} />
        {/* FleetMetricsPage is titled here: its title needs no data. */}
        <Route
          path="metrics"
          element={
            <>
              <Title parts={["Fleet metrics"]} />
              <FleetMetricsPage />
            </>
          }
        />
        <Route path="history" element={<HistoryPage />} />
        <Route path="m/:migrationId" element={<MigrationPage />} />
        {/* Candidate ids contain slashes (acme/billing): the rest of the path is the id. */}
        <Route path="m/:migrationId/c/*" element={<CandidatePage />} />
        <Route path="m/:migrationId/r/:rolloutId" element={<RolloutPage />} />
        <Route
          path="*"
          element={
            <>
              <Title parts={["Not found"]} />
              <NotFound />
            </>
          }
        />
      </Route>
    </Routes>
  );
}
