-- The night map of each camera and preset (analytics/fire/nightmap.py): which cells of the picture were lit
-- on each of the last nights, and how long each cell has been lit tonight, so a restarted fire worker still
-- knows the yard lamps it learnt over several nights.

create table fire_night_map (
    terminal_id  bigint      not null references terminal (id) on delete cascade,
    preset       integer,
    grid_w       integer     not null check (grid_w > 0),
    grid_h       integer     not null check (grid_h > 0),
    nights       integer     not null check (nights between 0 and 31),
    lit_cells    bytea       not null,
    -- one bit per cell and past night, oldest night first, rows of grid_w cells (numpy packbits)
    tonight      date,
    tonight_lit_s bytea      not null,
    -- seconds each cell has been lit tonight, float32 little-endian, rows of grid_w cells
    updated_at   timestamptz not null default now(),
    unique nulls not distinct (terminal_id, preset)
);
