-- A client the handler refuses must get SMFIR_REPLYCODE at connect (sendmail then says 421
-- and drops the SMTP session). Run: miltertest -D port=PORT -D addr=IP -s refused.lua

-- miltertest swallows the message of a Lua error; print it before failing.
local function main()
	local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.1)
	if conn == nil then error("cannot connect to the milter on port " .. port) end
	mt.set_timeout(5)

	local err = mt.negotiate(conn, 6, nil, nil)
	if err ~= nil then error("negotiate: " .. err) end

	mt.macro(conn, SMFIC_CONNECT, "{client_addr}", addr, "i", "6APHQKMi010071")
	err = mt.conninfo(conn, "attacker.example.test", addr)
	if err ~= nil then error("connect: " .. err) end
	local got = mt.getreply(conn)
	if got ~= SMFIR_REPLYCODE then
		error("connect from " .. addr .. ": reply " .. tostring(got) .. ", wanted SMFIR_REPLYCODE")
	end
	mt.disconnect(conn)
	mt.echo("refused " .. addr .. " ok")
end

local ok, err = pcall(main)
if not ok then
	io.stderr:write("FAIL: " .. tostring(err) .. "\n")
	os.exit(1)
end
