/* pl_move: `parleyd move-buckets`, the operator's mover of buckets from one
 * PostgreSQL shard to another while the nodes run (docs/scaling.md 4,
 * docs/operations.md 16.2). The work is the PostgreSQL backend's
 * (pg/pg_move.c). */
#ifndef PL_MOVE_H
#define PL_MOVE_H

/* argv[0] is "move-buckets". Exit status: 0 moved, 1 failed (the message
 * says why; running it again finishes or redoes the move), 2 bad usage. */
int pl_move_main(int argc, char **argv);

#endif
