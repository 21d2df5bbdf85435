import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CandidateFilterSchema, CandidateSelectionSchema } from "./gen/loom/v1/bulk_pb";

export type CandidateFilterInit = MessageInitShape<typeof CandidateFilterSchema>;

// Selection is what the Candidate table's checkboxes hold: Candidates by id,
// or every Candidate matching the table's filter (count: how many the
// listing said match when it was chosen; the server resolves the filter
// itself when the request arrives).
export type Selection = { kind: "ids"; ids: string[] } | { kind: "filter"; filter: CandidateFilterInit; count: number };

export function selectionCount(s: Selection): number {
  return s.kind === "ids" ? s.ids.length : s.count;
}

// selectionMessage is the selection as the API takes it (CandidateSelection:
// exactly one of candidate_ids and filter).
export function selectionMessage(s: Selection): MessageInitShape<typeof CandidateSelectionSchema> {
  return s.kind === "ids" ? { candidateIds: s.ids } : { filter: s.filter };
}

// candidatesLabel names how many Candidates something touches: "1
// Candidate", "37 Candidates".
export function candidatesLabel(count: number): string {
  return `${count} Candidate${count === 1 ? "" : "s"}`;
}

// The most Candidates one bulk action may select (bulk.proto); a rollout
// may select up to 100,000.
export const maxBulkSelection = 10_000;
export const maxRolloutSelection = 100_000;
