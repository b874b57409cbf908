-- sae:export (tests/e2e/test_feature_export.py runs this with `loupe run`, PLANTED = a hand-built
-- SAE whose feature 0 fires on TOKEN only, OUT = a folder): both formats, then the bad input.
local m = loupe.load(MODEL)
local tok = loupe.tokenizer(MODEL)
local text = "Mara lives in Oslo and <script>alert(1)</script> Ben lives in Paris. Anna moved to Oslo. "
local ds = loupe.data.load{text = string.rep(text, 20), tokenizer = tok}
local sae = loupe.sae.load(PLANTED)
local function fails(f, pat)
    local ok, err = pcall(f)
    assert(not ok, "expected an error matching " .. pat)
    assert(tostring(err):find(pat, 1, true), "error '" .. tostring(err) .. "' lacks '" .. pat .. "'")
end
fails(function() return sae:export{format = "neuronpedia", dir = OUT .. "/np"} end, "no harvest")
local h = sae:harvest{model = m, data = ds, ctx = 32, quiet = true}
assert(sae:export{format = "neuronpedia", dir = OUT .. "/np", id = "default"} == 2, "two files")
assert(sae:export{format = "circuit-tracer", dir = OUT .. "/ct/features/scan", features = {0}, id = "planted"} == 1)
fails(function() return sae:export{format = "sae_vis", dir = OUT} end, "format must be")
fails(function() return sae:export{format = "neuronpedia"} end, "dir must be")
fails(function() return sae:export{format = "neuronpedia", dir = OUT, features = {2}} end, "features[1]")
fails(function() return sae:export{format = "neuronpedia", dir = OUT, features = {-1}} end, "features[1]")
print(string.format("DENSITY %.17g", h.density[1]))
print(string.format("MAX %.9g", h.max[1]))
print("ok")
