-- A whole SMTP session as sendmail would drive it, after negotiating protocol `version`
-- (-D version=2 or 6; v2 also offers only v2 actions and steps, as an 8.13 sendmail would).
-- Run: miltertest -D port=PORT -D version=6 -s session.lua

-- miltertest swallows the message of a Lua error; print it before failing.
local function main()
	local v = tonumber(version)
	local actions, steps = nil, nil
	if v == 2 then
		actions, steps = 0x3F, 0x7F
	end

	local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.1)
	if conn == nil then error("cannot connect to the milter on port " .. port) end
	mt.set_timeout(5)

	local err = mt.negotiate(conn, v, actions, steps)
	if err ~= nil then error("negotiate v" .. version .. ": " .. err) end

	local function expect(step, err, want)
		if err ~= nil then error(step .. ": " .. err) end
		local got = mt.getreply(conn)
		if got ~= want then error(step .. ": reply " .. tostring(got) .. ", wanted " .. tostring(want)) end
	end

	mt.macro(conn, SMFIC_CONNECT, "j", "mx.interop.test", "{client_addr}", "198.51.100.7",
		"{client_port}", "40188", "i", "6APHQKMi010070", "{daemon_name}", "MTA-interop")
	expect("connect", mt.conninfo(conn, "client.example.test", "198.51.100.7"), SMFIR_CONTINUE)
	expect("helo", mt.helo(conn, "client.example.test"), SMFIR_CONTINUE)
	mt.macro(conn, SMFIC_MAIL, "i", "6APHQKMi010070", "{auth_type}", "LOGIN", "{auth_authen}", "testuser")
	expect("mail", mt.mailfrom(conn, "<sender@example.org>", "SIZE=100"), SMFIR_CONTINUE)
	expect("rcpt", mt.rcptto(conn, "<user@mx.interop.test>"), SMFIR_CONTINUE)

	-- The filter may have turned the message steps off at negotiation; a disabled step is skipped,
	-- as sendmail would skip it.
	if not mt.test_option(conn, SMFIP_NOHDRS) then
		local e = mt.header(conn, "Subject", "interop")
		if e ~= nil then error("header: " .. e) end
	end
	if not mt.test_option(conn, SMFIP_NOEOH) then
		local e = mt.eoh(conn)
		if e ~= nil then error("eoh: " .. e) end
	end
	if not mt.test_option(conn, SMFIP_NOBODY) then
		local e = mt.bodystring(conn, "hello\r\n")
		if e ~= nil then error("body: " .. e) end
	end
	local e = mt.eom(conn)
	if e ~= nil then error("eom: " .. e) end
	local r = mt.getreply(conn)
	if r ~= SMFIR_CONTINUE and r ~= SMFIR_ACCEPT then error("eom: reply " .. tostring(r)) end

	e = mt.disconnect(conn)
	if e ~= nil then error("disconnect: " .. e) end
	mt.echo("session v" .. version .. " ok")
end

local ok, err = pcall(main)
if not ok then
	io.stderr:write("FAIL: " .. tostring(err) .. "\n")
	os.exit(1)
end
