-- The township's finding on the spot: money is withheld per confirmed straw fire point, so the verdict is
-- kept with the event (秸秆露天焚烧火点 / 根茬及残余物焚烧火点 / other heat source / false alarm).

alter table fire_event add column verdict text
    check (verdict in ('straw', 'residue', 'other_heat', 'false'));
alter table fire_event add column verified_by text;
alter table fire_event add column verified_at timestamptz;
alter table fire_event add column verdict_note text;
